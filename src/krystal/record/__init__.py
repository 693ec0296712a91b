"""MCAP recording and playback of topics (`krystal record`, `krystal play`)."""
