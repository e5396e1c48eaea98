"""The serving engine and the scheduler it shares with the simulator."""
