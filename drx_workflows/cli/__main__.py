from drx_workflows.cli import main

main()
