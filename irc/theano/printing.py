"""theano.printing over irc's inspection: pp, debugprint and pydotprint (irc.graph).
Imports irc.symbolic only."""

from irc import symbolic as _S

pp = _S.pp


def debugprint(obj, file=None, **kwargs):
    """The IR of a compiled function or an expression (irc.debugprint)."""
    return _S.debugprint(obj, file=file)


def pydotprint(fct, outfile=None, format="png", **kwargs):
    """A drawing of the graph (irc.graph; needs Graphviz for images)."""
    return _S.graph(fct, outfile, format=None if outfile else format)
