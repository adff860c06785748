"""The benchmark (`make bench`, `tsforge bench`): our served models against the in-process
limit, a minimal handler, LitServe and TorchServe's defaults, with its report and the README's
published figures. Not installed and not in the image: it runs from the checkout."""
