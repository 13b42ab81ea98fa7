from pledgeflow.cli import main

main()
