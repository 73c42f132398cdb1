"""``gpunet sweep``: a grid of learning rates, weight decays and seeds trained as one stack
(``gn.stack``): ``grid`` trains it, ``report`` ranks and writes it, ``cli`` is the command."""
