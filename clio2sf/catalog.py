"""What the migration reads from Clio: one entry per staged object.

This is the contract between the extractor (which builds its requests from it) and the mapping
engine (which reads the staged records).  Every field and parameter named here must exist in
Clio's official API spec, spelled as it spells it (tests check it against clio-cli's OpenAPI
file, which is also all the Clio sandbox follows).  Pure data, no Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_CF = "custom_field_values{id,field_name,field_type,value,custom_field,picklist_option}"


@dataclass(frozen=True)
class ClioObject:
    """One Clio collection the extractor pages through.

    :param name: staging name (folder under ``raw/``), also the external-id prefix.
    :param endpoint: path under ``/api/v4`` (without ``.json``).
    :param fields: the ``fields`` selection sent on every page.
    :param params: fixed query parameters (e.g. ``type=Matter`` for notes).
    :param incremental: the endpoint honours ``updated_since``.
    :param migrated: staged for loading (False: exported as reference JSON only).
    :param ordered: the endpoint takes ``order``; the extractor then asks for ``id(asc)`` (cursor
        paging in id order).  Endpoints without the parameter page by id already; Clio documents no
        ``order`` for them, so none is sent.
    """

    name: str
    endpoint: str
    fields: str
    params: dict[str, str] = field(default_factory=dict)
    incremental: bool = True
    migrated: bool = True
    ordered: bool = True

    @property
    def list_params(self) -> dict[str, str]:
        """The fixed query parameters of every listing of this object, ``order`` included."""
        return ({"order": "id(asc)"} if self.ordered else {}) | self.params

    @property
    def field_list(self) -> list[str]:
        """Split ``fields`` on top-level commas (braces kept together)."""
        out, depth, cur = [], 0, ""
        for ch in self.fields:
            if ch == "," and depth == 0:
                out.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        if cur:
            out.append(cur)
        return out


CLIO_OBJECTS: tuple[ClioObject, ...] = (
    ClioObject(
        "users",
        "users",
        "id,etag,name,first_name,last_name,email,enabled,rate,subscription_type,roles,default_calendar_id,"
        "created_at,updated_at",
    ),
    ClioObject(
        "practice_areas",
        "practice_areas",
        "id,etag,name,code,category,created_at,updated_at",
    ),
    ClioObject(
        "matter_stages",
        "matter_stages",
        "id,etag,name,order,practice_area_id,created_at,updated_at",
        ordered=False,
    ),
    ClioObject(
        "custom_fields",
        "custom_fields",
        "id,etag,name,parent_type,field_type,displayed,required,deleted,display_order,"
        "picklist_options{id,option,deleted_at},created_at,updated_at",
    ),
    ClioObject(
        "contacts",
        "contacts",
        "id,etag,type,name,first_name,middle_name,last_name,prefix,title,date_of_birth,"
        "primary_email_address,secondary_email_address,primary_phone_number,"
        "secondary_phone_number,is_client,company{id,name},"
        "email_addresses{id,name,address,primary},phone_numbers{id,name,number,primary},"
        "addresses{id,name,street,city,province,postal_code,country,primary},"
        "related_contacts{id,name,type},"
        f"{_CF},created_at,updated_at",
    ),
    ClioObject(
        "matters",
        "matters",
        "id,etag,number,display_number,description,status,open_date,pending_date,close_date,"
        "billable,billing_method,client_reference,location,client{id,name},"
        "practice_area{id,name,code,category},matter_stage{id,name},"
        "responsible_attorney{id,name,email},originating_attorney{id,name,email},"
        "custom_rate{type,on_invoice,rates},account_balances{id,balance,type},"
        "evergreen_retainer{id,minimum_threshold},"
        f"{_CF},created_at,updated_at",
    ),
    ClioObject(
        "relationships",
        "relationships",
        "id,etag,description,matter{id,display_number},contact{id,name,type},"
        "created_at,updated_at",
        ordered=False,
    ),
    ClioObject(
        "activity_descriptions",
        "activity_descriptions",
        "id,etag,name,default,rate,category_type,created_at,updated_at",
        ordered=False,
    ),
    ClioObject(
        "activity_rates",
        "activity_rates",
        "id,etag,rate,flat_rate,contact_id,co_counsel_contact_id,user{id,name},"
        "group{id,name},created_at,updated_at",
        ordered=False,
    ),
    ClioObject(
        "expense_categories",
        "expense_categories",
        "id,etag,name,rate,entry_type,created_at,updated_at",
    ),
    ClioObject(
        "activities",
        "activities",
        "id,etag,type,date,quantity,rounded_quantity,quantity_in_hours,price,total,"
        "non_billable_total,billed,on_bill,non_billable,no_charge,flat_rate,note,reference,"
        "tax_setting,matter{id,display_number},user{id,name,email},"
        "activity_description{id,name},expense_category{id,name},vendor{id,name},"
        "bill{id,number},created_at,updated_at",
    ),
    ClioObject(
        "bills",
        "bills",
        "id,etag,number,type,kind,state,subject,memo,issued_at,due_at,start_at,end_at,"
        "paid_at,last_sent_at,total,due,balance,paid,sub_total,tax_sum,"
        "client{id,name},matters{id,display_number},currency{id,code},created_at,updated_at",
    ),
    ClioObject(
        "line_items",
        "line_items",
        "id,etag,type,kind,description,note,date,quantity,price,sub_total,tax,total,"
        "bill{id,number},matter{id,display_number},activity{id,type},created_at,updated_at",
        ordered=False,
    ),
    ClioObject(
        "bank_accounts",
        "bank_accounts",
        "id,etag,type,name,institution,currency,balance,default_account,"
        "created_at,updated_at",
    ),
    ClioObject(
        "bank_transactions",
        "bank_transactions",
        "id,etag,type,transaction_type,bank_account_id,date,amount,funds_in,funds_out,"
        "currency,description,source,confirmation,client{id,name},"
        "matter{id,display_number},bill{id,number},created_at,updated_at",
    ),
    ClioObject(
        "trust_line_items",
        "trust_line_items",
        "id,etag,date,total,note,bill{id,number},matter{id,display_number},"
        "client{id,name},created_at,updated_at",
    ),
    ClioObject(
        "documents",
        "documents",
        "id,etag,type,name,filename,size,content_type,received_at,deleted_at,"
        "matter{id,display_number},contact{id,name},parent{id,name},document_category{id,name},"
        "latest_document_version{id,uuid,version_number,filename,size,content_type,"
        "received_at,fully_uploaded},created_at,updated_at",
    ),
    ClioObject(
        "calendar_entries",
        "calendar_entries",
        "id,etag,summary,description,location,start_at,end_at,all_day,start_at_time_zone,"
        "recurrence_rule,parent_calendar_entry_id,calendar_owner{id,name,type},"
        "attendees{id,type,name,email},matter{id,display_number},created_at,updated_at",
        ordered=False,
    ),
    ClioObject(
        "tasks",
        "tasks",
        "id,etag,name,description,status,priority,due_at,completed_at,permission,"
        "assignee{id,type,name},assigner{id,name},matter{id,display_number},"
        "task_type{id,name},created_at,updated_at",
    ),
    ClioObject(
        "task_types",
        "task_types",
        "id,etag,name,deleted_at,created_at,updated_at",
    ),
    ClioObject(
        "matter_notes",
        "notes",
        "id,etag,type,subject,detail,date,matter{id,display_number},author{id,name,email},"
        "created_at,updated_at",
        params={"type": "Matter"},
    ),
    ClioObject(
        "contact_notes",
        "notes",
        "id,etag,type,subject,detail,date,contact{id,name},author{id,name,email},"
        "created_at,updated_at",
        params={"type": "Contact"},
    ),
    ClioObject(
        "communications",
        "communications",
        "id,etag,type,subject,body,date,received_at,user{id,name,email},"
        "matter{id,display_number},senders{id,type,name},receivers{id,type,name},"
        "created_at,updated_at",
        params={"order": "id(asc)"},
    ),
    # The money trail (clio2sf/mapping/money.py, clio2sf/books.py): which payment or credit paid
    # which bill (from trust or operating), credit memos, interest charges, what each client owes.
    ClioObject(
        "allocations",
        "allocations",
        "id,etag,date,amount,interest,voided_at,description,payment_type,has_online_payment,"
        "bill{id,number},matter{id,display_number},contact{id,name,type},"
        "source_bank_account{id,name,type},destination_bank_account{id,name,type},"
        "parent{id,type,identifier},created_at,updated_at",
    ),
    ClioObject(
        "credit_memos",
        "credit_memos",
        "id,etag,date,amount,description,discount,voided_at,user{id,name},contact{id,name,type},"
        "allocations{id,amount},created_at,updated_at",
    ),
    ClioObject(
        "interest_charges",
        "interest_charges",
        "id,etag,date,description,total,bill{id,number},matters{id,display_number},created_at,updated_at",
        ordered=False,
    ),
    ClioObject(
        "outstanding_client_balances",
        "outstanding_client_balances",
        "id,etag,total_outstanding_balance,last_payment_date,newest_issued_bill_due_date,"
        "pending_payments_total,associated_matter_ids,contact{id,name,type},"
        "outstanding_bills{id,number,balance},currency{id,code},created_at,updated_at",
        incremental=False,
        ordered=False,
    ),
    # Personal-injury matters.
    ClioObject(
        "damages",
        "damages",
        "id,etag,amount,damage_type,description,matter{id,display_number},created_at,updated_at",
        ordered=False,
    ),
    ClioObject(
        "medical_records_details",
        "medical_records_details",
        "id,etag,description,in_treatment,treatment_start_date,treatment_end_date,records_status,"
        "bills_status,records_request_date,records_follow_up_date,bills_request_date,bills_follow_up_date,"
        "matter{id,display_number},medical_provider{id,name,type},medical_bills{id,name,amount,adjustment},"
        "created_at,updated_at",
        ordered=False,
    ),
    # Configuration exported as JSON reference files, not loaded.
    ClioObject(
        "task_template_lists",
        "task_template_lists",
        "id,etag,name,description,practice_area{id,name},created_at,updated_at",
        migrated=False,
    ),
    ClioObject(
        "task_templates",
        "task_templates",
        "id,etag,name,description,priority,task_template_list{id,name},created_at,updated_at",
        migrated=False,
    ),
    ClioObject(
        "document_templates",
        "document_templates",
        "id,etag,filename,size,content_type,document_category{id,name},created_at,updated_at",
        migrated=False,
    ),
    ClioObject(
        "custom_actions",
        "custom_actions",
        "id,etag,label,target_url,ui_reference,created_at,updated_at",
        migrated=False,
        ordered=False,
    ),
    ClioObject(
        "webhooks",
        "webhooks",
        "id,etag,url,model,events,status,expires_at,created_at,updated_at",
        migrated=False,
    ),
    ClioObject(
        "groups",
        "groups",
        "id,etag,name,type,users{id,name},updated_at",
        migrated=False,
    ),
    ClioObject(
        "custom_field_sets",
        "custom_field_sets",
        "id,etag,name,parent_type,displayed,custom_fields{id,name},created_at,updated_at",
        migrated=False,
    ),
    ClioObject(
        "document_categories",
        "document_categories",
        "id,etag,name,created_at,updated_at",
        migrated=False,
    ),
    ClioObject(
        "bill_themes",
        "bill_themes",
        "id,etag,name,default,created_at,updated_at",
        migrated=False,
        ordered=False,
    ),
    ClioObject(
        "reminders",
        "reminders",
        "id,etag,duration,state,next_delivery_at,notification_method{id,type},subject{id,type,identifier},"
        "created_at,updated_at",
        migrated=False,
    ),
)

#: Single-record configuration endpoints exported as reference JSON.
CLIO_SETTINGS_ENDPOINTS: tuple[str, ...] = ("settings/billing",)

BY_NAME: dict[str, ClioObject] = {o.name: o for o in CLIO_OBJECTS}


def get(name: str) -> ClioObject:
    """Return the catalog entry for a staged object name, or raise KeyError naming it."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown Clio object {name!r}; known: {sorted(BY_NAME)}") from None
