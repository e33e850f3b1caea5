"""Continuous training: new interactions retrain a challenger that is promoted only if it is not worse."""
