"""Alert delivery where SREs already look: a Prometheus gauge per open alert and an optional
Slack-compatible webhook per rule. `AlertNotifier` (notify.py) is the one entry point; the
message (slack.py) and the gauge's bookkeeping (gauge.py) are pure, the webhook queue
(webhook.py) is the only IO."""
