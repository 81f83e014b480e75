from drx_workflows.cli.main import main

main()
