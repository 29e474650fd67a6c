"""Pictures for the notebooks: a token coloured part by part, and a token's lifetime on a time line."""

import base64
import html
import json
from datetime import datetime

from IPython.display import HTML

COLOURS = {"header": "#d7263d", "payload": "#8e44ad", "signature": "#1b8fd1"}


def _decoded(part: str) -> str:
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    try:
        return json.dumps(json.loads(raw), indent=2)
    except ValueError:
        return f"{len(raw)} bytes: " + raw.hex()


def show_token(token: str) -> HTML:
    """The token as jwt.io shows it: each part in its colour, and what each part decodes to."""
    parts = dict(zip(COLOURS, token.split("."), strict=True))
    coloured = ".".join(
        f'<span style="color:{COLOURS[name]}">{html.escape(text)}</span>' for name, text in parts.items()
    )
    rows = "".join(
        f'<tr><td style="color:{COLOURS[name]};font-weight:bold;text-align:left">{name}</td>'
        f'<td style="text-align:left"><pre style="margin:0">{html.escape(_decoded(text))}</pre></td></tr>'
        for name, text in parts.items()
    )
    return HTML(
        f'<div style="font-family:monospace;word-break:break-all;font-size:1.1em">{coloured}</div><table>{rows}</table>'
    )


def show_lifetime(issued: datetime, now: datetime, expires: datetime) -> HTML:
    """A time line from issued to expires, with a marker at now (clamped to the ends)."""
    span = (expires - issued).total_seconds() or 1
    at = round(100 * min(max((now - issued).total_seconds() / span, 0), 1))
    colour = "#2e8b57" if now < expires else "#d7263d"
    labels = (
        f'<div style="position:absolute;left:0;top:40px;white-space:nowrap;font-size:0.85em">'
        f"issued (iat)<br>{issued:%Y-%m-%d %H:%M:%S} UTC</div>"
        f'<div style="position:absolute;right:0;top:40px;white-space:nowrap;font-size:0.85em;text-align:right">'
        f"expires (exp)<br>{expires:%Y-%m-%d %H:%M:%S} UTC</div>"
    )
    return HTML(
        '<div style="position:relative;height:100px;margin:10px 40px;font-family:sans-serif">'
        '<div style="position:absolute;top:24px;left:0;right:0;height:6px;background:#ccc"></div>'
        f'<div style="position:absolute;top:24px;left:0;width:{at}%;height:6px;background:{colour}"></div>'
        f'<div style="position:absolute;top:-12px;left:{at}%;color:{colour};font-weight:bold;text-align:center;'
        'line-height:1;transform:translateX(-50%)">'
        f"now<br>▼</div>{labels}</div>"
    )
