"""Resilience state shared by all requests of a process: retry budgets and version health."""
