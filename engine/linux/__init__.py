"""Linux system interfaces the runtime needs and Python 3.11's ``os`` lacks."""
