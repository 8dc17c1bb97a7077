from bgcut.cli import main

main()
