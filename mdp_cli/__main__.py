from mdp_cli import main

main()
