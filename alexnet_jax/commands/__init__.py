"""One module per command (alexnet-train, alexnet-evaluate, ...): its flags, `main` and `run`,
in the pattern of `cli`."""
