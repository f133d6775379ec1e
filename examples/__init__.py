"""The example models (.tg), IR (.tgir) and their small data, shipped as package data of
irc.examples so an installed irc can find them. No code lives here."""
