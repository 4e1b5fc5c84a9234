"""Everything that talks to git: subprocesses, the filter protocol, attributes, config, drivers."""
