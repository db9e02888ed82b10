"""The RouterOS console language, as far as exec'd commands over SSH need it."""
