"""The operator console: its REST endpoints (`api`), the pure rules of who sees what, paging,
filters and redaction (`rules`), and the page at /ui (`static/`: the page, its script, Alpine.js)."""
