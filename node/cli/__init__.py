"""The `cpnode` command line. `main.COMMAND_MODULES` lists the modules that add subcommands."""
