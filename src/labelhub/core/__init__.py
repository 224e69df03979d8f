"""The storage core and the pieces both APIs share."""
