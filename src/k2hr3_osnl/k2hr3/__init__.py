"""The edge to K2HR3: the Role API delete call, on one asyncio event loop."""
