"""Huawei Cloud SMN messages at ``POST /smn``: verify (``verify``), read (``read``), queue
(``intake``): ModelArts job events and Cloud Eye/AOM alarms become alerts of the alert queue."""
