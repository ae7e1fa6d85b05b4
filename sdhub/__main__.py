from sdhub.cli.app import main

main()
