"""Developer tools, apart from what ships (the image copies only bot/): the ModelArts emulator,
the Slack stand-in and the terminal shell. They import the bot; the bot never imports them."""
