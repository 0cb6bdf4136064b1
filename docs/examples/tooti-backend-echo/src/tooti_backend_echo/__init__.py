"""Example tooti backend plugin that echoes the last user message."""
