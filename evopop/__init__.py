"""evopop: population-based evolutionary hyperparameter optimisation of recurrent PPO agents."""

__version__ = "0.1.0"
