"""The command line: commands, the summary table and progress bars."""
