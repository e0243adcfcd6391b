"""The Slack bot: the slack_bolt app and the Block Kit rendering of answers. A surface: imports the newsroom
(``service.newsroom``), never imported by answering."""
