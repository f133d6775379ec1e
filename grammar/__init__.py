"""The grammar of the .tg language (tg.lark), shipped as package data of irc.grammar.

Read it with importlib.resources.files("irc.grammar") / "tg.lark". No code lives here."""
