"""A delta window's records point at parents outside the window: their external ids are read by Id."""

from clio2sf.verify import readback


class Org:
    def __init__(self):
        self.soql: list[str] = []

    def describe(self, sobject):
        fields = {"Contact": [{"name": "Id"}, {"name": "Clio_Id__c"},
                              {"name": "AccountId", "referenceTo": ["Account"]},
                              {"name": "OwnerId", "referenceTo": ["User"]}],
                  "Account": [{"name": "Id"}, {"name": "Clio_Id__c"}]}[sobject]
        return {"fields": fields}

    def query_all_iter(self, soql):
        self.soql.append(soql)
        if "FROM Contact" in soql:
            yield {"Id": "003000000000001AAA", "Clio_Id__c": "contact-2", "AccountId": "001000000000009AAA",
                   "OwnerId": "005000000000001AAA"}
        elif "FROM Account WHERE Id IN" in soql:
            yield {"Id": "001000000000009AAA", "Clio_Id__c": "contact-1"}


def test_parents_outside_the_records_read_are_indexed_by_id():
    org = Org()
    wanted = {"Contact": {"AccountId", "OwnerId"}}
    rb = readback.read(org, wanted)
    assert rb.key_of("001000000000009AAA") is None  # the parent Account was not read back
    readback.read_link_targets(org, rb, wanted)
    assert rb.key_of("001000000000009AAA") == "contact-1"
    assert [q for q in org.soql if "FROM Account" in q] == [
        "SELECT Id, Clio_Id__c FROM Account WHERE Id IN ('001000000000009AAA')"]
    assert not any("FROM User" in q for q in org.soql)  # owners are indexed by read_users
