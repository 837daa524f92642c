"""Provider API clients and the errors they raise."""
