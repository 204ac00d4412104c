"""Real-browser tests: Playwright driving Debian's chromium against a live server (see conftest.py)."""
