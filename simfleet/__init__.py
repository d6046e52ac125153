"""The composition root and the command line: the top of the house, above every flow."""
