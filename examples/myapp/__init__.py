"""An application that uses bgtasks: its own task types (tasks.py) and a web app that enqueues them (web.py)."""
