"""Node implementations as declarations: what a lab runs is read from files, not coded."""
