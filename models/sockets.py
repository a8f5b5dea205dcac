"""Open Socket.IO connections, so a logout or a disabled account can close them in
whichever server process holds them. Each row names the process that holds it; a
process that stops heartbeating (killed) has its rows removed by the others."""

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class SocketSession(Base):
    __tablename__ = "socket_sessions"
    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_id: Mapped[str | None] = mapped_column(String(36), index=True)
    connected_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    owner: Mapped[str | None] = mapped_column(String(80), index=True)  # the holding process


class SocketOwner(Base):
    """A server process holding sockets, and when it last said it is alive."""

    __tablename__ = "socket_owners"
    owner: Mapped[str] = mapped_column(String(80), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
