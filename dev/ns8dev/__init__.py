"""Development stand-ins for the NS8 platform: the agent runner and the sandbox node."""
