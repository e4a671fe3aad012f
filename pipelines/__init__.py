"""Beam graphs, sources, sinks, global stages and the `wudao` command line. The only package that imports
apache_beam."""
