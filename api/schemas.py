"""Request and response schemas. Requests are validated by these same classes that
the OpenAPI description is generated from (api/openapi.py). What a section may hold is
the core's (renkei/sections/catalogue.py); so are the access log's filters (renkei/oversight/reading.py)."""

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates, validates_schema

from models.directory import ORGANIZATION_KINDS, PROFESSIONS
from renkei.access_log import entries
from renkei.access_log.verification import PROBLEMS
from renkei.common.timefmt import iso
from renkei.notes import notes
from renkei.observations.kinds import KINDS as OBSERVATION_KINDS
from renkei.observations.kinds import MAX_ITEMS as MAX_READINGS
from renkei.oversight.reading import Query as AuditQuery  # noqa: F401  (the API validates with the core's filters)
from renkei.patients.authz import ROLES
from renkei.patients.consent import plausible_date
from renkei.patients.registry import plausible_birth_date
from renkei.people.invitations import LOGIN_PATTERN
from renkei.sections.catalogue import SECTION_KEYS, Phone

SEXES = ("male", "female", "other", "unknown")


class UTCDateTime(fields.Field):
    """Naive-UTC datetimes out as ISO 8601 with Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        return value if isinstance(value, str) or value is None else iso(value)


def name_field(max_len=100, **kw):
    return fields.String(required=True, validate=validate.Length(min=1, max=max_len), **kw)


class Strict(Schema):
    class Meta:
        unknown = RAISE


# --- auth -------------------------------------------------------------------
def passkey_field(**kw):
    return fields.Dict(metadata={"description": "a WebAuthn assertion as PublicKeyCredential.toJSON() writes it"}, **kw)


class TokenRequest(Strict):
    """A login and password (with `otp` once the person has TOTP), or a passkey alone."""

    login = fields.String(validate=validate.Length(min=1, max=100))
    password = fields.String(validate=validate.Length(min=1, max=200))
    otp = fields.String(validate=validate.Regexp(r"^\d{6}$", error="Six digits."), allow_none=True)
    passkey = passkey_field()

    @validates_schema
    def _one_way(self, data, **_):
        if "passkey" in data:
            if data.keys() - {"passkey"}:
                raise ValidationError("A passkey signs in alone.", "passkey")
            return
        for name in ("login", "password"):
            if name not in data:
                raise ValidationError("Missing data for required field.", name)


class PasskeyOptionsIn(Strict):
    pass


class PasskeyIn(Strict):
    credential = fields.Dict(
        required=True, metadata={"description": "the new credential as PublicKeyCredential.toJSON() writes it"}
    )
    name = fields.String(validate=validate.Length(min=1, max=100))


class PasskeyMade(Schema):
    id = fields.String()
    name = fields.String()
    created_at = UTCDateTime()


class PasskeyOut(PasskeyMade):
    last_used_at = UTCDateTime(allow_none=True)


class PasskeyList(Schema):
    items = fields.List(fields.Nested(PasskeyOut))


class PasskeyCreationOptions(Schema):
    """WebAuthn Level 3 JSON, as PublicKeyCredential.parseCreationOptionsFromJSON reads it."""

    rp = fields.Dict()
    user = fields.Dict()
    challenge = fields.String()
    pubKeyCredParams = fields.List(fields.Dict())
    timeout = fields.Integer()
    excludeCredentials = fields.List(fields.Dict())
    authenticatorSelection = fields.Dict()
    attestation = fields.String()
    hints = fields.List(fields.String())


class PasskeyRequestOptions(Schema):
    """WebAuthn Level 3 JSON, as PublicKeyCredential.parseRequestOptionsFromJSON reads it."""

    challenge = fields.String()
    timeout = fields.Integer()
    rpId = fields.String()
    allowCredentials = fields.List(fields.Dict())
    userVerification = fields.String()


class Notice(Schema):
    kind = fields.String()
    by = fields.String(allow_none=True)
    at = UTCDateTime()


class TokenResponse(Schema):
    token = fields.String()
    expires_at = UTCDateTime()
    enrolment_required = fields.Boolean(
        metadata={"description": "true: this token opens only the enrolment of a second factor; sign in again after"}
    )
    notice = fields.Nested(
        Notice, allow_none=True, metadata={"description": "once after an access reset: who reset it, when"}
    )


class RecoverIn(Strict):
    login = name_field()
    code = fields.String(required=True, validate=validate.Length(min=1, max=40))
    new_password = fields.String(required=True, validate=validate.Length(max=200))


class ResetOut(Schema):
    id = fields.String()
    user_id = fields.String()
    status = fields.String()
    recovery_code = fields.String()
    expires_at = UTCDateTime()


class OtpRequest(Strict):
    otp = fields.String(required=True, validate=validate.Regexp(r"^\d{6}$", error="Six digits."))


class TotpEnrolment(Schema):
    secret = fields.String()
    otpauth_uri = fields.String()


# --- directory --------------------------------------------------------------
class OrganizationIn(Strict):
    name = name_field(200)
    kind = fields.String(required=True, validate=validate.OneOf(ORGANIZATION_KINDS))
    phone = Phone()


class OrganizationOut(Schema):
    id = fields.String()
    name = fields.String()
    kind = fields.String()
    phone = fields.String(allow_none=True)
    created_at = UTCDateTime()


class OrganizationList(Schema):
    items = fields.List(fields.Nested(OrganizationOut))


def login_field(**kw):
    return fields.String(validate=validate.Regexp(LOGIN_PATTERN, error="Up to 100 letters, digits or . _ @ -"), **kw)


class UserIn(Strict):
    """No password: the person chooses it, with the invitation in the answer."""

    login = login_field(metadata={"description": "left out: the person chooses it on accepting the invitation"})
    display_name = name_field(200)
    organization_id = fields.String(required=True)
    profession = fields.String(required=True, validate=validate.OneOf(PROFESSIONS))
    phone = Phone()
    is_admin = fields.Boolean(load_default=False)
    is_auditor = fields.Boolean(load_default=False)


class Invitation(Schema):
    code = fields.String(metadata={"description": "128 bits, single use; hand it to the person alone"})
    url = fields.String(metadata={"description": "the page that accepts it; the code is in its #fragment"})
    expires_at = UTCDateTime()


class InvitationAccept(Strict):
    code = fields.String(required=True, validate=validate.Length(min=1, max=100))
    password = fields.String(
        required=True,
        validate=validate.Length(max=200),
        metadata={"description": "12+ characters, not a common one (renkei/people/passwords.py)"},
    )
    login = login_field(metadata={"description": "required when the account has none yet"})


class InvitationAccepted(Schema):
    user_id = fields.String()


class UserPatch(Strict):
    """No password here: nobody sets another person's password (administrators reset)."""

    display_name = fields.String(validate=validate.Length(min=1, max=200))
    phone = Phone(allow_none=True)
    disabled = fields.Boolean()


class OutboxKey(Schema):
    id = fields.String()
    key = fields.String(metadata={"description": "256-bit AES-GCM key, base64url without padding"})


class OutboxKeys(Schema):
    user_id = fields.String()
    keys = fields.List(fields.Nested(OutboxKey), metadata={"description": "the current key first"})
    csrf_token = fields.String()


class UserOut(Schema):
    id = fields.String()
    login = fields.String()
    display_name = fields.String()
    phone = fields.String(allow_none=True)
    organization_id = fields.String()
    organization_name = fields.String()
    profession = fields.String()
    is_admin = fields.Boolean()
    is_auditor = fields.Boolean()
    disabled = fields.Boolean()
    totp_enabled = fields.Boolean()
    confirmed = fields.Boolean(
        metadata={
            "description": "false: made or changed by an administrator and "
            "not yet confirmed by a second person; opens no patient"
        }
    )
    awaiting_invitation = fields.Boolean(metadata={"description": "administrators' list: invited, not yet accepted"})


class UserCreated(UserOut):
    invitation = fields.Nested(Invitation)


class UserList(Schema):
    items = fields.List(fields.Nested(UserOut))


class UserQuery(Strict):
    q = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "words that each appear in the person's name or organisation (for the team picker)"},
    )
    limit = fields.Integer(
        validate=validate.Range(min=1, max=200),
        metadata={"description": "at most this many people (with q: 20 unless given)"},
    )


class ListQuery(Schema):
    class Meta:
        unknown = "exclude"

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=validate.Length(max=100))


# --- patients ---------------------------------------------------------------
class ConsentIn(Strict):
    obtained_on = fields.Date(required=True)
    obtained_by = name_field(200)
    scope = fields.String(required=True, validate=validate.Length(min=1, max=2000))

    @validates("obtained_on")
    def _not_future(self, value, **_):
        if not plausible_date(value):  # the core's rule (renkei/patients/consent.py)
            raise ValidationError("Consent cannot be dated in the future.")


class PatientIn(Strict):
    name = name_field(metadata={"description": "氏名"})
    name_kana = name_field(metadata={"description": "ふりがな"})
    birth_date = fields.Date(required=True)
    sex = fields.String(required=True, validate=validate.OneOf(SEXES))
    address = fields.String(validate=validate.Length(max=300))
    phone = Phone()
    consent = fields.Nested(
        ConsentIn,
        metadata={
            "description": "the consent to share, when it is already obtained: recorded with the patient, in one step"
        },
    )

    @validates("birth_date")
    def _not_future(self, value, **_):
        if not plausible_birth_date(value):  # the core's rule (renkei/patients/registry.py)
            raise ValidationError("Not a plausible birth date.")


class PatientQuery(Strict):
    """No filters in the URL: a name in a URL ends up in server and proxy logs."""


class AuditPatientOut(Schema):
    id = fields.String()
    name = fields.String()
    name_kana = fields.String()
    birth_date = fields.String()


class AuditPatientList(Schema):
    items = fields.List(fields.Nested(AuditPatientOut))


class PatientSearch(Strict):
    name = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "full name or kana, or the beginning of the family name (blind index)"},
    )


class PatientOut(Schema):
    id = fields.String()
    name = fields.String(allow_none=True)
    name_kana = fields.String(allow_none=True)
    birth_date = fields.String(allow_none=True)
    sex = fields.String(allow_none=True)
    address = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    my_role = fields.String(allow_none=True)
    breakglass = fields.Boolean()
    consent = fields.Boolean()
    consent_withdrawn = fields.Boolean(metadata={"description": "care list: consent was recorded, then withdrawn"})
    emergency_access_open = fields.Boolean(
        metadata={"description": "someone off the team has the record open in an emergency (break-glass) now"}
    )
    created_at = UTCDateTime()
    updated_at = UTCDateTime(allow_none=True)
    changed_since_my_last_view = fields.List(fields.String())
    urgent_unacknowledged = fields.Integer()
    unread_notes = fields.Integer(metadata={"description": "notes by others I have not seen, urgent ones included"})
    unread_urgent = fields.Integer(metadata={"description": "the urgent notes among them"})
    alerts_since_my_last_view = fields.Integer(
        metadata={"description": "readings by others that alerted the team since my last look"}
    )


class PatientList(Schema):
    items = fields.List(fields.Nested(PatientOut))


class ConsentOut(Schema):
    id = fields.String()
    obtained_on = fields.String()
    obtained_by = fields.String()
    scope = fields.String()
    recorded_by = fields.String()
    recorded_at = UTCDateTime()
    withdrawn_at = UTCDateTime(allow_none=True)
    active = fields.Boolean()


class ConsentList(Schema):
    items = fields.List(fields.Nested(ConsentOut))


class TeamIn(Strict):
    user_id = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class TeamMemberOut(Schema):
    user_id = fields.String()
    role = fields.String()
    display_name = fields.String()
    profession = fields.String()
    organization_id = fields.String()
    organization_name = fields.String()
    phone = fields.String(allow_none=True)
    organization_phone = fields.String(allow_none=True)
    added_at = UTCDateTime()
    added_by = fields.String()
    disabled = fields.Boolean(metadata={"description": "the person's account is disabled (停止中)"})
    status = fields.String(
        metadata={
            "description": '"pending" (202): an administrator\'s appointment, '
            "no access until a second person confirms it"
        }
    )


class Appointment(Schema):
    id = fields.String()
    user_id = fields.String()
    role = fields.String()
    requested_by = fields.String()
    requested_at = UTCDateTime()
    status = fields.String()


class TeamList(Schema):
    items = fields.List(fields.Nested(TeamMemberOut))
    pending = fields.List(
        fields.Nested(Appointment),
        metadata={"description": "administrators' appointments awaiting a second person's confirmation"},
    )
    can_manage = fields.Boolean()


# --- record -----------------------------------------------------------------
class SectionOut(Schema):
    section = fields.String(validate=validate.OneOf(SECTION_KEYS))
    version = fields.Integer()
    content = fields.Dict()
    updated_at = UTCDateTime(allow_none=True)
    updated_by = fields.String(allow_none=True)
    updated_by_name = fields.String(allow_none=True)


class RecordOut(Schema):
    patient_id = fields.String()
    sections = fields.Dict(keys=fields.String(), values=fields.Nested(SectionOut))
    writable = fields.List(fields.String())


class SectionIn(Strict):
    content = fields.Dict(
        required=True,
        metadata={"description": "the section's content; its shape is the section's schema (see components)"},
    )


class SectionVersions(Schema):
    items = fields.List(fields.Nested(SectionOut))


# --- timeline ---------------------------------------------------------------
class NoteIn(Strict):
    body = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    category = fields.String(required=True, validate=validate.OneOf(notes.CATEGORIES))
    urgent = fields.Boolean(load_default=False)
    reply_to = fields.String(
        allow_none=True,
        validate=validate.Length(max=64),
        metadata={"description": "the note this answers; a reply to a reply answers its thread's first note"},
    )

    @validates("body")
    def _not_blank(self, value, **_):
        if not value.strip():  # spaces, full-width spaces and line breaks say nothing
            raise ValidationError("Write something: the note is empty.")


class AckOut(Schema):
    user_id = fields.String()
    display_name = fields.String()
    at = UTCDateTime()


class NoteOut(Schema):
    id = fields.String()
    patient_id = fields.String()
    body = fields.String()
    category = fields.String()
    urgent = fields.Boolean()
    created_at = UTCDateTime()
    author_id = fields.String()
    author_name = fields.String()
    acks = fields.List(fields.Nested(AckOut))
    readers = fields.Integer(metadata={"description": "current team members other than the author (既読 acks/readers)"})
    acknowledged_by_me = fields.Boolean()
    reply_to = fields.String(allow_none=True, metadata={"description": "the first note of the thread it answers"})
    seen_by = fields.List(fields.Nested(AckOut), metadata={"description": "who has seen it (既読); 確認 implies seen"})
    seen_by_me = fields.Boolean()
    escalations = fields.List(
        fields.Nested("EscalationRoundOut"),
        metadata={"description": "urgent notes: each time nobody had acknowledged it in time"},
    )


class EscalationRoundOut(Schema):
    at = UTCDateTime()
    minutes = fields.Integer(metadata={"description": "minutes since the note was posted"})
    told = fields.List(fields.String(), metadata={"description": "backup_physician, call_list; empty: nobody to tell"})


class EscalationRuleIn(Strict):
    # Within the day an escalation lasts; repeats no more often than every 5 minutes.
    after_minutes = fields.Integer(validate=validate.Range(min=1, max=720))
    repeat_minutes = fields.Integer(validate=validate.Range(min=5, max=720))
    call_list = fields.List(
        fields.String(validate=validate.Length(max=36)),
        validate=validate.Length(max=50),
        metadata={"description": "user ids of team members told beside the backup physician"},
    )


class EscalationRuleOut(Schema):
    after_minutes = fields.Integer()
    repeat_minutes = fields.Integer()
    call_list = fields.List(fields.String())


class NoteList(Schema):
    items = fields.List(fields.Nested(NoteOut))
    next_cursor = fields.String(allow_none=True)


class NoteSearch(Strict):
    text = fields.String(
        required=True,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "a word of the body; full- and half-width alike. Never logged."},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=validate.Length(max=100))

    @validates("text")
    def _not_blank(self, value, **_):
        if not value.strip():
            raise ValidationError("Type a word to search for.")


# --- observations (renkei/observations/readings.py) ---------------------------------------
class ReadingIn(Strict):
    """One reading. The core checks the value against its kind (422 naming the field)."""

    kind = fields.String(required=True, validate=validate.OneOf(OBSERVATION_KINDS))
    value = fields.Raw(metadata={"description": "a number; a string of one is read as typed (全角, 36,8)"})
    components = fields.Dict(
        keys=fields.String(), values=fields.Raw(), metadata={"description": "blood_pressure: systolic and diastolic"}
    )
    unit = fields.String(validate=validate.Length(max=20), metadata={"description": "UCUM; the kind's own unit"})
    measured_at = fields.String(
        validate=validate.Length(max=40), metadata={"description": "ISO 8601; default now; never in the future"}
    )
    note = fields.String(validate=validate.Length(max=2000))
    bristol = fields.Integer(metadata={"description": "bowel_movement: Bristol stool form 1-7"})


class ObservationIn(ReadingIn):
    """One reading, or several under `items` (then nothing else)."""

    kind = fields.String(validate=validate.OneOf(OBSERVATION_KINDS))
    items = fields.List(fields.Nested(ReadingIn), validate=validate.Length(min=1, max=MAX_READINGS))

    @validates_schema
    def _one_or_many(self, data, **_):
        if "items" in data and len(data) > 1:
            raise ValidationError("Send either one reading or items, not both.", "items")
        if "items" not in data and "kind" not in data:
            raise ValidationError("Missing data for required field.", "kind")


class ObservationOut(Schema):
    id = fields.String()
    patient_id = fields.String()
    kind = fields.String()
    loinc = fields.String(allow_none=True, metadata={"description": "null: no LOINC code maps the kind"})
    value = fields.Float(metadata={"description": "every kind but blood_pressure"})
    components = fields.Dict(
        keys=fields.String(), values=fields.Float(), metadata={"description": "blood_pressure: systolic, diastolic"}
    )
    unit = fields.String()
    bristol = fields.Integer()
    note = fields.String(allow_none=True)
    measured_at = UTCDateTime()
    recorded_at = UTCDateTime()
    recorded_by = fields.String()
    recorded_by_name = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "entry or import"})
    late = fields.Boolean(metadata={"description": "measured over 24 h before it was recorded: alerts nobody"})
    alert = fields.Boolean(metadata={"description": "this reading raised the team's alert"})
    threshold = fields.Dict(allow_none=True, metadata={"description": "the threshold it was beyond when recorded"})
    entered_in_error = fields.Boolean()
    error_at = UTCDateTime(allow_none=True)
    error_by = fields.String(allow_none=True)


class ObservationList(Schema):
    items = fields.List(fields.Nested(ObservationOut))
    next_cursor = fields.String(allow_none=True)


class ObservationQuery(Schema):
    class Meta:
        unknown = "exclude"

    kind = fields.String(validate=validate.OneOf(OBSERVATION_KINDS))
    since = fields.String(validate=validate.Length(max=40), metadata={"description": "measured at or after"})
    until = fields.String(validate=validate.Length(max=40), metadata={"description": "measured before"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    cursor = fields.String(validate=validate.Length(max=100))


class ImportIn(Strict):
    csv = fields.String(
        required=True,
        validate=validate.Length(min=1, max=900_000),
        metadata={
            "description": "header measured_at,kind,value,unit,note; blood pressure 150/90; no offset: Japan time"
        },
    )


class ImportRow(Schema):
    line = fields.Integer()
    kind = fields.String()
    measured_at = UTCDateTime()
    value = fields.Float()
    components = fields.Dict(keys=fields.String(), values=fields.Float())
    note = fields.String()
    duplicate = fields.Boolean(metadata={"description": "the patient has it already, or the file repeats it"})
    errors = fields.Dict(allow_none=True, metadata={"description": "why the row is refused, by field"})


class ImportOut(Schema):
    rows = fields.List(fields.Nested(ImportRow))
    new = fields.Integer()
    duplicates = fields.Integer()
    refused = fields.Integer()
    saved = fields.List(fields.String(), metadata={"description": "the ids of the readings saved"})


class ThresholdsIn(Strict):
    thresholds = fields.Dict(
        required=True,
        keys=fields.String(),
        values=fields.Raw(),
        metadata={
            "description": 'per kind {"min", "max", "rise", "within_days"}; blood_pressure '
            '{"systolic": {"min", "max"}, "diastolic": {…}}'
        },
    )


class ThresholdsOut(Schema):
    thresholds = fields.Dict()
    version = fields.Integer()
    updated_at = UTCDateTime(allow_none=True)
    updated_by = fields.String(allow_none=True)
    updated_by_name = fields.String(allow_none=True)
    writable = fields.Boolean()


# --- attachments ------------------------------------------------------------
class AttachmentIn(Strict):
    """The form fields of an upload (multipart/form-data), beside the `file` part."""

    note_id = fields.String(
        validate=validate.Length(min=1, max=36), metadata={"description": "a note of yours to attach to"}
    )
    section = fields.String(validate=validate.OneOf(SECTION_KEYS), metadata={"description": "a section you may write"})
    caption = fields.String(validate=validate.Length(max=500))
    series = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "groups photos of one body site, e.g. 仙骨部褥瘡"},
    )


class AttachmentQuery(ListQuery):
    note_id = fields.String(validate=validate.Length(max=36))
    section = fields.String(validate=validate.OneOf(SECTION_KEYS))
    series = fields.String(validate=validate.Length(min=1, max=100))


class AttachmentOut(Schema):
    id = fields.String()
    patient_id = fields.String()
    content_type = fields.String(
        metadata={
            "description": "decided from the bytes: image/jpeg, image/png, "
            "image/webp or application/pdf (HEIC is stored as JPEG)"
        }
    )
    size = fields.Integer(metadata={"description": "bytes as stored (photos after re-encoding)"})
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    created_at = UTCDateTime()
    created_by = fields.String()
    created_by_name = fields.String(allow_none=True)
    note_id = fields.String(allow_none=True)
    section = fields.String(allow_none=True)
    caption = fields.String(allow_none=True)
    series = fields.String(allow_none=True)
    thumbnail = fields.Boolean(metadata={"description": "a thumbnail exists (photos)"})
    name = fields.String(
        allow_none=True, metadata={"description": "the file's name as chosen, e.g. 訪問看護報告書.pdf"}
    )


class AttachmentList(Schema):
    items = fields.List(fields.Nested(AttachmentOut))
    next_cursor = fields.String(allow_none=True)


# --- break-glass ------------------------------------------------------------
class BreakGlassIn(Strict):
    reason = fields.String(required=True, validate=validate.Length(min=5, max=1000))
    otp = fields.String(validate=validate.Regexp(r"^\d{6}$", error="Six digits."), allow_none=True)
    passkey = passkey_field()


class BreakGlassFind(BreakGlassIn):
    """The patient as the on-call physician knows them: the sheet's code, or full name
    (or kana) and birth date together; a reason and the one-time code, as for any
    break-glass (finding a patient always needs the second factor)."""

    code = fields.String(
        validate=validate.Length(min=1, max=40), metadata={"description": "the emergency sheet's code"}
    )
    name = fields.String(validate=validate.Length(min=1, max=100), metadata={"description": "full name or kana, exact"})
    birth_date = fields.Date()

    @validates_schema
    def _one_way(self, data, **_):
        if data.get("code"):
            if data.get("name") or data.get("birth_date"):
                raise ValidationError("Either the code, or the name and birth date.", "code")
        elif not data.get("name"):
            raise ValidationError("The code from the sheet, or the name with the birth date.", "code")
        elif not data.get("birth_date"):
            raise ValidationError("The birth date goes with the name.", "birth_date")


class BreakGlassOut(Schema):
    id = fields.String()
    patient_id = fields.String()
    expires_at = UTCDateTime()


class BreakGlassGrant(Schema):
    id = fields.String()
    patient_id = fields.String()
    user_id = fields.String()
    display_name = fields.String()
    opened_at = UTCDateTime()
    expires_at = UTCDateTime()
    reason = fields.String()
    open = fields.Boolean()


class BreakGlassList(Schema):
    items = fields.List(fields.Nested(BreakGlassGrant))


# --- audit ------------------------------------------------------------------
class AuditEntryOut(Schema):
    id = fields.Integer(metadata={"description": "insertion order: the entry has it at once"})
    seq = fields.Integer(
        allow_none=True,
        metadata={"description": "its place in the Merkle tree (leaf index + 1); null until sealed, within seconds"},
    )
    at = UTCDateTime()
    actor_id = fields.String(allow_none=True)
    actor_org_id = fields.String(allow_none=True)
    action = fields.String()
    patient_id = fields.String(allow_none=True)
    section = fields.String(allow_none=True)
    outcome = fields.String()
    client_addr = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)
    leaf_hash = fields.Function(
        lambda e: entries.b64(entries.leaf_hash_of(e)),
        allow_none=True,
        metadata={"description": "base64 RFC 9162 leaf hash; null until sealed"},
    )


class AuditList(Schema):
    items = fields.List(fields.Nested(AuditEntryOut))
    next_cursor = fields.String(allow_none=True)


class AuditVerify(Schema):
    ok = fields.Boolean()
    entries = fields.Integer(metadata={"description": "live entries recomputed"})
    first_bad = fields.Integer(allow_none=True, metadata={"description": "seq of the first bad entry"})
    reason = fields.String(metadata={"description": "what failed, in English"})
    problem = fields.String(metadata={"description": "what failed, as a code: " + ", ".join(PROBLEMS)})
    tree_size = fields.Integer()
    heads = fields.Integer(metadata={"description": "heads in the sink that agree with the recomputed tree"})
    archived_through = fields.Integer(metadata={"description": "entries up to this seq are archived"})
    unverifiable_heads = fields.Integer(metadata={"description": "notes in the sink not signed by our keys (ignored)"})
    unsealed = fields.Integer(metadata={"description": "entries written but not yet in the tree"})
    unsealed_oldest_seconds = fields.Float()


class Checkpoint(Schema):
    checkpoint = fields.String(metadata={"description": "the newest signed tree head: a C2SP signed note"})
    public_key = fields.String(metadata={"description": "base64 of the raw 32-byte Ed25519 key"})
    tree_size = fields.Integer()
    root_hash = fields.String(metadata={"description": "base64"})


class CheckpointIn(Schema):
    checkpoint = fields.String(
        required=True,
        validate=validate.Length(min=1, max=4096),
        metadata={"description": "a signed note from GET /audit/checkpoint, kept elsewhere"},
    )


POSITION = validate.Range(min=1, max=2**62)


class InclusionQuery(Schema):
    seq = fields.Integer(required=True, validate=POSITION)
    tree_size = fields.Integer(required=True, validate=POSITION)


class InclusionProof(Schema):
    leaf_index = fields.Integer()
    leaf_hash = fields.String()
    audit_path = fields.List(fields.String())
    tree_size = fields.Integer()


class ConsistencyQuery(Schema):
    first = fields.Integer(required=True, validate=POSITION)
    second = fields.Integer(required=True, validate=POSITION)


class ConsistencyProof(Schema):
    proof = fields.List(fields.String())


class CheckpointResult(Schema):
    ok = fields.Boolean()
    reason = fields.String()
    entries = fields.Integer()
    first_bad = fields.Integer(allow_none=True)


# --- push and e-mail (renkei/outreach/tell.py, renkei/outreach/webpush.py) -----------------------------
CLOCK = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="A time of day as HH:MM (Japan time).")


class VapidKey(Schema):
    public_key = fields.String(metadata={"description": "base64url, an uncompressed P-256 point"})


class PushKeys(Strict):
    p256dh = fields.String(required=True, validate=validate.Length(min=1, max=200))
    auth = fields.String(required=True, validate=validate.Length(min=1, max=100))


class PushSubscriptionIn(Strict):
    """The browser's PushSubscription.toJSON(), and a name for the device."""

    endpoint = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    expirationTime = fields.Float(allow_none=True)
    keys = fields.Nested(PushKeys, required=True)
    label = fields.String(allow_none=True, validate=validate.Length(max=100))


class PushSubscriptionOut(Schema):
    id = fields.String()
    endpoint = fields.String()
    label = fields.String(allow_none=True)
    created_at = UTCDateTime()
    last_used_at = UTCDateTime(allow_none=True)


class PushSubscriptionList(Schema):
    items = fields.List(fields.Nested(PushSubscriptionOut))


class PushChoices(Strict):
    urgent = fields.Boolean(metadata={"description": "urgent 連絡帳 notes on my patients (default on)"})
    breakglass = fields.Boolean(metadata={"description": "emergency access to my patients (default on)"})
    mentions = fields.Boolean(metadata={"description": "notes that name me as @name (default on)"})
    changes = fields.Boolean(metadata={"description": "any change on my patients (default off)"})


class QuietHours(Strict):
    start = fields.String(required=True, validate=CLOCK)
    end = fields.String(required=True, validate=CLOCK)

    @validates_schema
    def _not_empty(self, data, **kwargs):
        if data.get("start") == data.get("end"):
            raise ValidationError("Start and end must differ.", "end")


class EmailChoices(Strict):
    urgent = fields.Boolean(metadata={"description": "a mail for each urgent note (default on)"})
    digest = fields.Boolean(metadata={"description": "a daily mail counting my patients' changes (default off)"})


class NotificationSettingsIn(Strict):
    push = fields.Nested(PushChoices)
    quiet_hours = fields.Nested(
        QuietHours, allow_none=True, metadata={"description": "only urgent notes push in this window; null: none"}
    )
    email = fields.Nested(EmailChoices)


class EmailState(Schema):
    address = fields.String(allow_none=True, metadata={"description": "confirmed address"})
    pending = fields.String(allow_none=True, metadata={"description": "waiting for its link to be opened"})
    urgent = fields.Boolean()
    digest = fields.Boolean()


class NotificationSettingsOut(Schema):
    push = fields.Nested(PushChoices)
    quiet_hours = fields.Nested(QuietHours, allow_none=True)
    email = fields.Nested(EmailState)


class EmailChange(Strict):
    address = fields.Email(required=True, allow_none=True, validate=validate.Length(max=254))


class EmailConfirm(Strict):
    code = fields.String(required=True, validate=validate.Length(min=1, max=100))
