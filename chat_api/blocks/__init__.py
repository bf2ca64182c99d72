"""Blocks: whom each user keeps away (no direct message, friend request, group add, typing or presence from them)."""
