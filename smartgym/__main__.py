from smartgym.cli import main

main()
