"""Partners' revenue-share statements and their payout through WeChat Pay profit sharing."""
