"""What starts runs from outside: deployment helpers and the webhook receiver."""
