"""Content schemas of the ten 表3 sections (SPEC §2). Every field is optional so a
team can fill a section bit by bit; free text is Japanese-friendly plain text."""
from marshmallow import Schema, fields, validate

ADL_LEVELS = ("independent", "supervision", "partial_assist", "full_assist")
ADL_ITEMS = ("eating", "excretion", "mobility", "transfer", "bathing", "dressing",
             "grooming", "communication", "cognition")


def short(**kw):
    return fields.String(validate=validate.Length(max=200), **kw)


def text(**kw):
    return fields.String(validate=validate.Length(max=4000), **kw)


def rows(schema, max_rows=100):
    return fields.List(fields.Nested(schema), validate=validate.Length(max=max_rows))


class WishesContent(Schema):
    patient_wishes = text(metadata={"description": "本人の希望"})
    family_wishes = text(metadata={"description": "家族の希望"})
    preferred_place_of_care = short(metadata={"description": "療養したい場所"})
    preferred_place_of_death = short(metadata={"description": "最期を迎えたい場所"})
    resuscitation = fields.String(validate=validate.OneOf(("attempt", "do_not_attempt", "undecided")),
                                  metadata={"description": "心肺蘇生の希望"})
    acp_notes = text(metadata={"description": "人生会議(ACP)の記録"})
    discussed_on = fields.Date(metadata={"description": "話し合った日"})


class ConditionContent(Schema):
    summary = text(metadata={"description": "現在の状態"})
    recent_changes = text(metadata={"description": "最近の変化"})
    medication_adherence = fields.String(validate=validate.OneOf(("good", "partial", "poor", "unknown")),
                                         metadata={"description": "服薬状況"})
    medication_note = text()


class AdlItem(Schema):
    level = fields.String(required=True, validate=validate.OneOf(ADL_LEVELS))
    note = text()


AdlContent = Schema.from_dict({item: fields.Nested(AdlItem) for item in ADL_ITEMS}
                              | {"note": text()}, name="AdlContent")


class HomeContent(Schema):
    housing = text(metadata={"description": "住まい"})
    steps_stairs = text(metadata={"description": "段差・階段"})
    bed = text(metadata={"description": "ベッド"})
    bathroom = text(metadata={"description": "浴室・トイレ"})
    adaptations = text(metadata={"description": "住宅改修・福祉用具"})
    access_notes = text(metadata={"description": "訪問時の出入り"})


class Availability(Schema):
    morning = short()
    daytime = short()
    evening = short()
    night = short()


class KeyContact(Schema):
    name = short(required=True)
    relationship = short()
    phone = fields.String(validate=validate.Regexp(r"^[0-9+\-() ]{0,20}$"))
    note = short()


class FamilyCareContent(Schema):
    main_carer = short(metadata={"description": "主介護者"})
    availability = fields.Nested(Availability, metadata={"description": "時間帯別の対応可否"})
    limits = text(metadata={"description": "介護の限界・負担"})
    key_contacts = rows(KeyContact, 20)


class Condition(Schema):
    name = short(required=True)
    since = short()
    note = text()


class Medication(Schema):
    name = short(required=True)
    dose = short()
    route = short()
    frequency = short()
    prescriber = short()
    note = text()


class Allergy(Schema):
    substance = short(required=True)
    reaction = short()


class DiseasesMedicationsContent(Schema):
    conditions = rows(Condition)
    medications = rows(Medication)
    allergies = rows(Allergy)


class Explanation(Schema):
    explained_on = fields.Date()
    explained_by = short()
    explained_to = short()
    content = text(required=True)
    reception = text(metadata={"description": "受け止め方"})


class IllnessExplanationContent(Schema):
    entries = rows(Explanation)


class ExpectedChange(Schema):
    change = text(required=True)
    warning_signs = text()
    response = text()
    whom_to_call = short()


class ExpectedChangesContent(Schema):
    items = rows(ExpectedChange)


class HomeCareCautionsContent(Schema):
    cautions = text()


class CareNotesContent(Schema):
    notes = text()


SECTION_SCHEMAS = {
    "wishes": WishesContent, "condition": ConditionContent, "adl": AdlContent,
    "home": HomeContent, "family_care": FamilyCareContent,
    "diseases_medications": DiseasesMedicationsContent,
    "illness_explanation": IllnessExplanationContent,
    "expected_changes": ExpectedChangesContent,
    "home_care_cautions": HomeCareCautionsContent, "care_notes": CareNotesContent,
}


def clean_content(section: str, content: dict) -> dict:
    """Validate and normalise (dates back to ISO strings) a section's content."""
    schema = SECTION_SCHEMAS[section]()
    return schema.dump(schema.load(content))
