"""APScheduler wiring. The jobs themselves live beside their domain (e.g. kiosk_state/jobs.py)."""
