"""pledgeflow: import crowdfunding backer exports into a relational database with Prefect."""

import logging

# The websockets client logs every frame at DEBUG, among them the auth message in which
# Prefect's client sends PREFECT_API_AUTH_STRING: no pledgeflow process lets it below INFO.
logging.getLogger("websockets.client").setLevel(logging.INFO)
