"""Built-in model sources: the digits CNN, the rnn-localist network and torchvision models."""
