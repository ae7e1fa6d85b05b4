from sdhub.cli.entry import main

main()
