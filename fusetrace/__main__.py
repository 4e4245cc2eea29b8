from fusetrace.cli import main

main()
