from crystalgen.cli import main

main()
