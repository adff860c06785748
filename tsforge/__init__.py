"""tsforge: the command line and glue from a trained model to a served TorchServe archive."""
