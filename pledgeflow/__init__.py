"""pledgeflow: import crowdfunding backer exports into a relational database with Prefect."""
