"""Job alerts: an HTTP intake, a Redis queue per channel, a dispatcher that posts within Slack's
rate limits, and alert messages whose Stop button leads into the stop flow.

    POST /alerts ──parse──▶ AlertQueue.enqueue (dedupe, per-channel list) ──202
                                      │
    Dispatcher threads (every replica) ─ lease a due channel ─ post / update ─ finish or defer
"""
