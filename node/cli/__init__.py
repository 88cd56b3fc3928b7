"""The `cpnode` command line. `commands.COMMANDS` lists the commands and the modules that add them."""
